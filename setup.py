"""Package discovery for setuptools (everything else is in pyproject.toml).

``pyproject.toml`` cannot combine automatic discovery with the one package that lives outside the
``medseg/`` folder (``pipelines/`` -> ``medseg.pipelines``), so the list is built here: every package under
``medseg/`` plus the pipelines. A hand-written list once left ``medseg.runs`` out of the wheel (issue #25).
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["medseg", "medseg.*"]), "medseg.pipelines"])
