"""herd.safety: Llama Guard 3 format and classifier, trained guards, Prompt Guard, Code Shield, VR/FRR."""
