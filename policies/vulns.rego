# Vulnerability gate with VEX: findings per severity, after the VEX statements were applied,
# must not exceed `cihub_config.vuln_thresholds`; each finding over a threshold is named.
package cihub.vulns

default allow := false

allow if count(reasons) == 0

reasons contains "vulns: no vulnerability scan in the input" if not input.vulns

over(severity) if {
	limit := data.cihub_config.vuln_thresholds[severity]
	object.get(input.vulns.counts, severity, 0) > limit
}

reasons contains msg if {
	some f in input.vulns.findings
	over(f.severity)
	msg := sprintf("vulns: %s (%s) in %s has no VEX statement", [f.id, f.severity, f.purl])
}

reasons contains msg if {
	some severity, limit in data.cihub_config.vuln_thresholds
	n := object.get(input.vulns.counts, severity, 0)
	n > limit
	msg := sprintf("vulns: %d %s finding(s) not covered by VEX (allowed %d)", [n, severity, limit])
}

# Defence in depth: the VEX step refuses a not_affected statement without a justification, but
# the gate judges its input on its own (a hand-made or replayed input is judged the same way).
reasons contains msg if {
	some s in object.get(input.vulns, "suppressed", [])
	s.status == "not_affected"
	not justified(s)
	msg := sprintf("vulns: %s in %s is suppressed by a VEX statement without a justification", [s.id, s.purl])
}

justified(s) if {
	is_string(s.justification)
	s.justification != ""
}
