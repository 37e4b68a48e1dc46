"""Evaluation: answer parsers (``parsers``), metrics per task family (``metrics``), the dataset -> metric table and
driver (``evaluate``), the Markdown report (``report``) and drawing of parsed answers (``visualize``)."""
from .evaluate import DATASET_METRICS, evaluate, evaluate_files
from .parsers import ParseResult, parse_answer

__all__ = ["DATASET_METRICS", "ParseResult", "evaluate", "evaluate_files", "parse_answer"]
