"""The course kit: minigrad turned into graded coursework, from its own code.

``python -m minigrad.course list`` shows the units and their exercises; ``make DEST`` writes a
student copy in which the chosen exercises' bodies are stubs, with a handout per unit; ``grade
DEST`` runs each unit's checks on that copy against this package as the answer key.
docs/course.md is the teacher's guide.
"""

from .grade import UnitResult, grade
from .make import make
from .units import UNITS, Unit

__all__ = ["UNITS", "Unit", "UnitResult", "grade", "make"]
