import os
import sys
from pathlib import Path

# keep tests within the 2-core budget and make the repo importable without installation
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
