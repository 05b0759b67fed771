"""Credit assessment that adapts to a new segment from a few labelled loans: data and the input
transform (data.py), segments as meta-learning tasks (learn.py), the leave-one-segment-out
evaluation (evaluate.py), and the subcommands' library calls (jobs.py)."""
