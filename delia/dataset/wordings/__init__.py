"""Anisotropic instruction diversification for any task: where each training example's instruction
wording comes from (conf/wordings/), and how the eval splits probe seen and unseen wordings.

- :mod:`~delia.dataset.wordings.instruction`: finding the instruction in a chat dataset's user turns
  (a column, a pattern, a sentence, or the sentence the rows share, found automatically);
- :mod:`~delia.dataset.wordings.pool`: the sources (``none``, ``one``, ``file``, ``rules``,
  ``paraphrase``), combined in the order ``wordings.sources`` lists them, and the held-out share;
- :mod:`~delia.dataset.wordings.rules` (no model), :mod:`~delia.dataset.wordings.paraphrase` (the model,
  through the sampler backends, cached and resumable);
- :mod:`~delia.dataset.wordings.filters`: what a wording must pass, and the pool's measures;
- :mod:`~delia.dataset.wordings.apply`: the splits rewritten (the recipe calls :func:`apply_wordings`
  once the model is loaded); :mod:`~delia.dataset.wordings.checks`: the refusals before any work.

Guarantees: ``wordings=none`` (the default) leaves every split as it was; the data part of a user turn is
never rewritten; the held-out wordings are never trained and are the same for every method of a sweep;
each rejected wording is counted by reason in ``metrics.json`` (``wordings/*``).
"""

from delia.dataset.wordings.apply import WordingReport, apply_wordings
from delia.dataset.wordings.checks import check_options, check_rows
from delia.dataset.wordings.paraphrase import Runtime

__all__ = ["Runtime", "WordingReport", "apply_wordings", "check_options", "check_rows"]
