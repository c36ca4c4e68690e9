"""Root conftest of this repository. The bundled checks ship in the package
(``pytest_deployproof/suites``) and the plugin comes from the installed package (entry
point ``deployproof``), so nothing is registered here. `pytest --env local -m smoke`
from a clone runs the bundled checks, and suites/e2e, against inventories/local.yml.
"""

collect_ignore = ["demo", "benchmarks", "scripts"]
