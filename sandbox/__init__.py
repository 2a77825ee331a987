"""What runs inside the sandbox (shipped in the package as ``codealign.sandbox``)."""
