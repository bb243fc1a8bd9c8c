"""``python -m ccgrade.fusion``: the command line of ``ccgrade.fusion.model``."""

from ccgrade.fusion.model import main

main()
