package bot

// MaxCardBytes lets the tests hold cards to the limit the code splits at.
const MaxCardBytes = maxCardBytes

// MayUpgrade lets the tests see the code an upgrade is refused with.
var MayUpgrade = mayUpgrade
