; GRBL laser-engraver style (hand-written): M4 dynamic power, S on motion lines, no spaces
G21G90
M4 S0
G0X12.49Y12.49Z1.0005
G1X12.51F150S20
Y12.51S25
X12.49
Y12.49
M5 S0
G0 X12.5 Y12.5
M2
