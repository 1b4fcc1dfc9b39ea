package approval

import "regexp"

var entraIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsEntraID reports whether s is written as an Entra ID identifier (a
// tenant, application, user or group id, or a Teams app id): a GUID in its
// 36-character form, without braces or a urn: prefix.
func IsEntraID(s string) bool { return entraIDPattern.MatchString(s) }
