package bot

// MaxCardBytes lets the tests hold cards to the limit the code splits at.
const MaxCardBytes = maxCardBytes
