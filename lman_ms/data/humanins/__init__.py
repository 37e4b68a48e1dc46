"""HumanIns: instruction/answer records built from public human-centric datasets in their real formats."""
from .errors import AnnotationError, ErrorPolicy
from .registry import Converter, get_converter, list_datasets, register_converter
from .sample import TASKS, Sample

__all__ = ["AnnotationError", "ErrorPolicy", "Converter", "get_converter", "list_datasets", "register_converter",
           "TASKS", "Sample"]
