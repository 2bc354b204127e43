"""Hardware generation (Amaranth 0.5): processing elements, PE array, interconnect, Verilog export.

Never imports the golden model (evhw.golden); reads converted networks only through generated
artefacts and the QNet data structures. Built in issue "Hardware v1".
"""
