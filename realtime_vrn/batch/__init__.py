"""``realtime-vrn batch``: many videos and photos reconstructed on Ray workers (or one after another in-process).

inputs     folders, globs, list files -> videos and images with their output folders
options    the typed settings (outputs; where it runs)
worker     a model loaded once, tasks (video parts, photos) reconstructed with the pipeline's pieces
executors  where the tasks run: this process, or Ray actors (Ray imported there only: the ``cluster`` extra)
runner     the driver: plan, skip what is finished, run, join parts in order, rename into place, report
records    per-frame landmarks, head pose and crop as arrays (``frames.npz``); pose: head pose from landmarks
cli        the ``batch`` subcommand
"""
