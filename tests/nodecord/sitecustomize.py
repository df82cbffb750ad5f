"""Test-only: hide decord, as on a platform without its wheel (tests/test_decode.py test_decode_without_decord).

With ``None`` in ``sys.modules`` ``import decord`` raises ImportError and ``importlib.util.find_spec`` returns
None, so ``pipeline.decode`` sees no decord in this process and in the decoder children it starts.
"""

import sys

sys.modules["decord"] = None  # type: ignore[assignment]
