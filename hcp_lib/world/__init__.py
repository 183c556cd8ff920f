"""The synthetic world: HCPs, content and campaigns (entities), the true engagement law and its
oracle (behaviour), the business-as-usual logging policy (simulate), and building, writing and
loading a world (synth, notebook 02). Every HCP is synthetic.
"""
