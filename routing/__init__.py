"""Who handles a need: departments, industries (附件3), service means (附件2) and rules.

Pure: no database, no channel library.
"""

from routing.departments import Department, DepartmentDirectory, load_departments

__all__ = ["Department", "DepartmentDirectory", "load_departments"]
