"""DELIA: Diversity-Enhanced Learning for Instruction Adaptation (arXiv 2408.10841).

Where to find the method's parts:
- the loss schedule (interleave / weighted / two_stage):   delia/schedule.py
- the mixing of downstream and diverse data:               delia/data/mixing.py, delia/data/datamodule.py
- self-sampling of the diverse data (with its cache):      delia/sampling.py
- the training step (per-source losses):                   delia/module.py
- the built-in <sep> task and anisotropic diversification: delia/data/sep_format.py
- baselines and ablations (config only):                   conf/baseline/, conf/ablation/
- the whole recipe from setup to cleanup:                  delia/recipe.py
- metrics and the representation analysis:                 delia/metrics.py, delia/representation.py
- sweep tables and plots (delia-report):                   delia/report.py
- resume, preemption, safe checkpoints, locks:             delia/callbacks.py, delia/checkpoint_io.py, delia/locking.py
"""

__version__ = "0.1.0"
