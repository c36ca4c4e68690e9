"""Root conftest: the bundled suites live in suites/, the plugin comes from the
installed package (entry point ``deployproof``), so nothing is registered here.
`pytest --env local -m smoke` from a clone runs suites/ against inventories/local.yml.
"""

collect_ignore = ["demo", "benchmarks", "scripts"]
