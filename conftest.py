pytest_plugins = ["panjereh.common.testing.plugin"]
