"""``python -m ccgrade.ingest``: the command line of ``ccgrade.ingest.patient``."""

from ccgrade.ingest.patient import main

main()
