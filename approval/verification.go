package approval

// Grant is a resource-specific permission in force in a chat, team or
// user's personal scope (a resourceSpecificPermissionGrant).
type Grant struct {
	ClientID    string
	ClientAppID string
	Permission  Permission
}

// Verification is what the bot found after an upgrade, shown on its card.
type Verification struct {
	// Missing are permissions of the new version that are not both
	// consented and granted in the scope.
	Missing []Permission `json:"missing,omitempty"`
	// Problem: the check itself failed (WhatWentWrong reads it).
	Problem Problem `json:"why,omitzero"`
	// ProblemText is what releases before Problem recorded instead, an
	// English sentence.
	ProblemText string `json:"problem,omitempty"`
}

// MissingPermissions are the permissions of required that are not both
// consented (on the installation) and granted (some grant in its scope
// holds them: Graph v1.0 does not say which Entra app an installation is),
// sorted.
func MissingPermissions(required, consented []Permission, grants []Grant) []Permission {
	granted := map[string]bool{}
	for _, g := range grants {
		granted[g.Permission.key()] = true
	}
	isConsented := map[string]bool{}
	for _, p := range consented {
		isConsented[p.key()] = true
	}
	var missing []Permission
	for _, p := range required {
		if !granted[p.key()] || !isConsented[p.key()] {
			missing = append(missing, p)
		}
	}
	SortPermissions(missing)
	return missing
}
