"""``python -m medseg.cli`` runs ``medseg``; ``python -m medseg.cli --reference`` prints docs/cli.md."""

import sys

from medseg.cli import cli_reference, main

if sys.argv[1:] == ["--reference"]:
    print(cli_reference(), end="")
    sys.exit(0)
sys.exit(main())
