"""The six HumanIns tasks (paper, Table 1), in the paper's order: the one list every module that iterates over the
tasks imports (training's held-out split, evaluation, the demo, the ablation driver)."""
from __future__ import annotations

HUMANINS_TASKS = ("action_recognition", "pedestrian_detection", "pedestrian_attribute", "expression_recognition",
                  "face_detection", "pose_estimation")

__all__ = ["HUMANINS_TASKS"]
