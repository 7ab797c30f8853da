"""Evaluation (conf/eval/): eval loss, the generation-based metrics of the task, the representation distances.

- :mod:`delia.eval.evaluate`: everything a run measures at its end (``evaluate``), and generation;
- :mod:`delia.eval.formats`: reply formats (the ``<sep>`` task's, any chat dataset's) and their metrics;
- :mod:`delia.eval.translation_metrics`: chrF, BLEU, BLEURT;
- :mod:`delia.eval.representation`: the distance of the new token to the prior description's key words;
- :mod:`delia.eval.retention` and :mod:`delia.eval.probe`: what tuning costs outside the task.
"""
