"""Studies of training runs: batch-size sweeps (tuned or not), their reports, the advisor.

A layer above the runs: it starts each run as a child `python -m lbtrain.main` process
(`child_run`) and reads the run's folder (`lbtrain.workdir`) afterwards. It never imports the
loop (train, build, steps), only what a config alone determines (`plan.recipe`, the data set's
sizes), so a run it starts trains exactly as one a user starts, and a crash stays inside the run.
"""
