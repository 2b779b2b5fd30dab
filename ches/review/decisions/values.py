"""The one vocabulary of decision values: every other module (browse, export, charts, cli, ui, pages) imports it
(from `ches.review.decisions`)."""
from __future__ import annotations

KEEP, DROP, FLAG = "keep", "drop", "flag"
CLEAR = "clear"                                # recorded to withdraw a decision; never in force
UNDO = "undo"                                  # the log's own action (see `undo`); never recorded by hand
UNDECIDED = "undecided"                        # a pair's status when no decision is in force; never stored
DECISION_VALUES = (KEEP, DROP, FLAG)           # what a decision in force can be (Decision.decision)
DECISIONS = (*DECISION_VALUES, CLEAR)          # what an annotator can record
ACTIONS = (*DECISIONS, UNDO)                   # what the log can hold
STATUSES = (UNDECIDED, *DECISION_VALUES)       # a pair's review status (Browse's filter, the Map's colours)
