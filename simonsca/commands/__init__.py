"""The ``simonsca`` subcommands, a module per group, each registering its own parsers
(:mod:`simonsca.cli` builds the command from them and runs it): :mod:`.data` (generate, prepare),
:mod:`.evaluate` (eval, compare), :mod:`.diagnose` (diff, doctor), :mod:`.adapter_files` (merge,
convert, checkpoints), :mod:`.stored_runs` (runs); :mod:`.common` holds what their parsers share.
"""
