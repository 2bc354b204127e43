"""cocotb verification: testbenches that check the generated hardware bit-exact against evhw.golden."""
