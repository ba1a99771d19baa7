# Shared by the test-environment scripts (sourced, not run).
# The extras the test suite needs; requirements/test.txt pins everything they bring.
TEST_EXTRAS="dev,docker,browser,serve,export,ray"
