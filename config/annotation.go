// SPDX-License-Identifier: Apache-2.0

package config

import (
	"strings"

	"github.com/agnivade/levenshtein"
)

// KeyKind is what an annotation key is to bypass-hook.
type KeyKind int

const (
	// KeyOther is someone else's key: ignored.
	KeyOther KeyKind = iota
	// KeyOurs is under bypass-hook.io/ in any case of letters.
	KeyOurs
	// KeyNearMiss looks like a typo of our prefix (bypass-hook.io.enabled,
	// bypass_hook.io/enabled, bypas-hook.io/enabled): refused like a
	// misspelt key of ours, since ignoring it could leave a container
	// unfenced that its author meant to fence.
	KeyNearMiss
)

// prefixLetters is AnnotationPrefix without its punctuation, the form near
// misses are measured in, so that a changed or missing separator counts
// as nothing and only letters that differ count.
const prefixLetters = "bypasshookio"

// nearMissDistance is how many letters may differ (added, dropped or
// changed) from prefixLetters for a key to count as a near miss. Two
// catches a swapped pair and any two slips; at three, unrelated keys
// begin to match.
const nearMissDistance = 2

// ClassifyAnnotationKey tells what key is to bypass-hook. For KeyOurs,
// canonical is the key in lower case, as the policy knows it
// (bypass-hook.io/enabled); otherwise it is the key as given.
func ClassifyAnnotationKey(key string) (canonical string, kind KeyKind) {
	lower := strings.ToLower(key)
	if strings.HasPrefix(lower, AnnotationPrefix) {
		return lower, KeyOurs
	}
	if nearMiss(prefixLetters, lower) {
		return key, KeyNearMiss
	}
	return key, KeyOther
}

// IsOurAnnotationKey reports whether key is ours or a near miss of ours:
// the keys a caller that passes annotations on to the hook (the NRI plugin)
// must pass, so that the hook can fence or refuse.
func IsOurAnnotationKey(key string) bool {
	_, kind := ClassifyAnnotationKey(key)
	return kind != KeyOther
}

// nearMiss reports whether the start of key, letters and digits only, is
// within nearMissDistance edits of prefix (letters only).
func nearMiss(prefix, key string) bool {
	letters := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, key)
	for n := len(prefix) - nearMissDistance; n <= len(prefix)+nearMissDistance && n <= len(letters); n++ {
		if levenshtein.ComputeDistance(prefix, letters[:n]) <= nearMissDistance {
			return true
		}
	}
	return false
}
