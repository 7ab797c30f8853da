"""DELIA: Diversity-Enhanced Learning for Instruction Adaptation (arXiv 2408.10841).

The folders mirror the config groups of ``conf/``: ``delia/model`` is ``conf/model`` (+ token_init, peft),
``delia/dataset`` is ``conf/dataset``, ``delia/diverse`` is ``conf/diverse``, ``delia/baselines`` is
``conf/baseline``, ``delia/eval`` is ``conf/eval``; ``delia/recipe.py`` runs them in the paper's order.
"""

__version__ = "0.1.0"
