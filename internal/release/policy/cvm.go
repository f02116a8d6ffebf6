package policy

// CVMDefault returns Azure's default confidential-VM release policy (the one
// an OS-disk/CMK key carries) naming authorityURL as its only authority, in
// canonical form: the token must say the VM is azure-compliant-cvm and was
// attested as an SEV-SNP or TDX VM (wire §3.3; Azure's own copy lists one
// regional shared MAA per entry). authorityURL should be an https URL naming a
// host, or the result does not parse.
func CVMDefault(authorityURL string) []byte {
	claim := func(name, want string) node {
		return node{kind: kindClaim, claim: name, segs: []string{name}, op: opEquals,
			val: value{kind: valueString, lit: want, text: want}}
	}
	p := &Policy{version: Version1, authorities: []authority{{
		url: authorityURL,
		key: splitAuthority(authorityURL),
		rule: node{kind: kindAllOf, members: []node{
			claim("x-ms-compliance-status", "azure-compliant-cvm"),
			{kind: kindAnyOf, members: []node{
				claim("x-ms-attestation-type", "tdxvm"),
				claim("x-ms-attestation-type", "sevsnpvm"),
			}},
		}},
	}}}
	return p.Canonical()
}
