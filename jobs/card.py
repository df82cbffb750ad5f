"""(Re)generate the dataset card of a version: ``<version>/card.md`` and its figures in ``<version>/card/``.

    python -m jobs.card VERSION        # a version dir, a file in it, a LATEST file or a root with LATEST

Cards are written automatically when jobs.build_manifest and jobs.extract publish a version; this stage
rewrites one (e.g. after a card failure warning, or with newer card code). Prints the card's path.
Exit status 2 with one line on stderr when VERSION is not a readable dataset version.
"""

from __future__ import annotations

import sys

from jobs.cli import checks
from jobs.report.dataset_card import write_card
from manifests.versioning import resolve


@checks.cli("card")
def main(argv: list[str] | None = None) -> int:
    p = checks.parser(prog="python -m jobs.card", description=__doc__.split("\n\n")[0])
    p.add_argument("version", help="dataset version (dir, file in it, LATEST file or root with LATEST)")
    a = p.parse_args(argv)
    try:
        print(write_card(resolve(a.version)))
    except (FileNotFoundError, ValueError) as e:  # not a version, unknown kind, shard files missing
        print(f"card: error: VERSION {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
