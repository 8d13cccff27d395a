"""Studies of training runs: batch-size sweeps (tuned or not), their reports, the advisor.

A layer above the runs: it starts each run as a child `python -m lbtrain.main` process and reads
the run's folder (`lbtrain.workdir`) afterwards; it never imports the loop (train, build, steps),
so a run it starts trains exactly as one a user starts, and a crash stays inside the run.
"""
