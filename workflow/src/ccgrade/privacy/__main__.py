"""``python -m ccgrade.privacy``: the command line of ``ccgrade.privacy.pseudonyms``."""

from ccgrade.privacy.pseudonyms import main

main()
