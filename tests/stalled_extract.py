"""Test-only entry point: ``python tests/stalled_extract.py SECONDS ARG...`` runs ``jobs.extract ARG...`` with the
pipelined flow pool's stall time (jobs.extraction.flowpool.STALL_S, 30 s) set to SECONDS, so that a test
of a lost node sees requests move to another actor within its time limit."""

import sys

from jobs.extraction import flowpool

if __name__ == "__main__":
    flowpool.STALL_S = float(sys.argv[1])
    from jobs import extract

    sys.exit(extract.main(sys.argv[2:]))
