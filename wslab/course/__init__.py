"""The course: what every lesson uses to talk to the learner, and the lesson files themselves.

The bottom layer: it imports nothing else of wslab, and everything may import it.

* ``checks.py``: the instant self-checks of every exercise (``wslab.check``,
  ``wslab.exercise``, ...): one readable paragraph on failure, no traceback.
* ``display.py``: small values that show as HTML in Jupyter and as text elsewhere.
* ``environment.py``: what this kernel runs on (lesson 00).
* ``exercises.py``: ``python -m wslab exercises``, learner copies from ``instructor/source/``.
* ``lessons.py``, ``_bundle.py``, ``safewrite.py``: ``python -m wslab lessons DIR``, and
  the rule that no command ever writes over a learner's edits.
* ``i18n.py``: the package's messages in the learner's language (standard gettext over
  ``locale/``; ``WSLAB_LANG``, a ``zh-CN`` lessons folder, or the locale decides).
* ``translation.py``: the translators' tool (Babel): catalogs for the lessons and the package,
  fuzzy when the English changes, ``notebooks/zh-CN/`` built from them; ``pages.py`` does the
  same for README, the guide and the classroom page.
"""

__all__: list[str] = []
