"""`cockpit`: the command line and the one composition root.

`cli.parser` is the one argparse tree, `cli.main` runs it (`cockpit = "cli.main:main"`; `python -m cli`),
`cli.compose` builds the engine and the apps from the arguments, `cli.paths` says where the cockpit's
files live (XDG). The commands: `cli.status` (status, plan), `cli.acting` (advance, rollback, restart,
lock), `cli.certs`, `cli.sessions` (drive, watch, replay).
"""
