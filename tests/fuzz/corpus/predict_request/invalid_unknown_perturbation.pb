
BRD-NOPE	
P1A01" 