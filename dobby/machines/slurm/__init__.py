"""Read Slurm's answers (jobs.py, capacity.py) and decide what they mean for a task (outcome.py).

Pure functions over the text of ``squeue``, ``scontrol show job|node``, ``sacct`` and ``sinfo``
as :mod:`dobby.hostside.slurm` asks for it; the formats are recorded in docs/SLURM-NOTES.md
(Slurm 22.05).
"""
