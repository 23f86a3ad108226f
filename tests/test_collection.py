"""Collecting the suite stays light: no test module imports an oracle library at its top."""


def test_collecting_the_tests_imports_no_oracle_library(oracles_imported_while_collecting):
    assert not oracles_imported_while_collecting, (
        f"collecting the tests imported {', '.join(oracles_imported_while_collecting)}: a test "
        "module (or conftest) imports it at its top; import it inside the tests or fixtures "
        "that use it (each test process collects every module)."
    )
