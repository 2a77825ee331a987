"""codealign's verdicts as rewards for other trainers: TRL reward functions, verl's score
function and an HTTP reward server (OpenRLHF's ``--remote_rm_url``), all over one
long-lived sandbox pool (``verifier.Verifier``)."""
