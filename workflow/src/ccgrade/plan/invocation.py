"""What the command line asked Snakemake for, read at parse time with Snakemake's own parser.

Snakemake parses the Snakefile before it hands the DAG its targets and before the executor (dry run or
not) exists, so the pre-flight reads them here: the targets (front-half targets turn study-only errors into
warnings) and whether this invocation runs jobs at all. One that does not (``-n``, ``--lint``, ``--list-*``,
``--summary``, ``--dag``, ``--report``, ...) writes nothing into the working tree: the privacy key, the
private record of the input paths and the private copy of the sheet are made by the first real run. Through
the API (no command line to read) an invocation counts as a real run with every target."""

from __future__ import annotations

import sys
from dataclasses import dataclass

#: Snakemake's options (by their argparse ``dest``) under which no job runs
READ_ONLY_OPTIONS = ("dryrun", "lint", "list_rules", "list_target_rules", "summary", "detailed_summary", "dag",
                     "rulegraph", "filegraph", "d3dag", "report", "print_compilation", "list_changes",
                     "list_input_changes", "list_params_changes", "list_untracked", "containerize", "export_cwl",
                     "archive", "unlock", "cleanup_metadata", "delete_all_output", "delete_temp_output",
                     "generate_unit_tests", "cleanup_shadow", "list_conda_envs", "conda_cleanup_envs",
                     "conda_create_envs_only")


@dataclass(frozen=True)
class Invocation:
    targets: frozenset[str] = frozenset()
    runs_jobs: bool = True


def read(argv: list[str] | None = None) -> Invocation:
    """The invocation ``argv`` (default: this process's command line after the program name) describes.
    Anything Snakemake's parser cannot read counts as a real run with every target."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        from snakemake.cli import get_argument_parser

        args = vars(get_argument_parser().parse_known_args(argv)[0])
    except (Exception, SystemExit):
        return Invocation()
    read_only = any(args.get(k) not in (None, False, [], "") for k in READ_ONLY_OPTIONS)
    return Invocation(frozenset(args.get("targets") or ()), not read_only)
