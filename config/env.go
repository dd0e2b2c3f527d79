// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"fmt"
	"maps"
	"strings"
)

// The environment variables of a container's spec (process.env) that opt it
// in where the engine gives the runtime no annotations (Docker before 25
// puts no labels into config.json). Each stands for the annotation of the
// same name and goes through the same policy: it may only narrow.
const (
	EnvEnabled = "BYPASS_HOOK_ENABLED"
	EnvMode    = "BYPASS_HOOK_MODE"
	EnvProxies = "BYPASS_HOOK_PROXIES"
)

// EnvPrefix is what the opt-in variables start with.
const EnvPrefix = "BYPASS_HOOK_"

// envLetters is EnvPrefix in the form near misses are measured in.
const envLetters = "bypasshook"

// envAnnotations is the annotation each variable stands for.
var envAnnotations = map[string]string{
	EnvEnabled: AnnEnabled,
	EnvMode:    AnnMode,
	EnvProxies: AnnProxies,
}

// EnvError refuses a container on its opt-in variables: a near miss of
// their names, a variable set twice to different values, one that
// contradicts an annotation, or a value the annotation it stands for would
// be refused with. It unwraps to an AnnotationError, so it is refused
// wherever an annotation would be (never let through by failure: open):
// the container's creator sets it, and may be the tenant the fence is for.
type EnvError struct {
	Var   string
	Value string
	Err   *AnnotationError
}

func (e *EnvError) Error() string {
	if e.Err.Annotation == "" {
		return fmt.Sprintf("environment variable %s=%q: %s", e.Var, e.Value, e.Err.Msg)
	}
	return fmt.Sprintf("environment variable %s=%q (which stands for %s): %s", e.Var, e.Value, e.Err.Annotation, e.Err.Msg)
}

func (e *EnvError) Unwrap() error { return e.Err }

const knownVars = EnvEnabled + ", " + EnvMode + " and " + EnvProxies

// EnvOptIn reads the opt-in variables from env (a spec's process.env,
// "KEY=value" each) and returns what they say under the annotations' keys.
// A variable of ours in another case, a near miss of the prefix
// (BYPASS-HOOK_, BYPASSHOOK_, BYPAS_HOOK_) or an unknown name under
// BYPASS_HOOK_ is refused: a typo must never leave a container unfenced in
// silence.
func EnvOptIn(env []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if ann, ok := envAnnotations[k]; ok {
			if prev, set := out[ann]; set && prev != v {
				return nil, &EnvError{k, v, &AnnotationError{Msg: fmt.Sprintf("is set twice, the other time to %q: drop one", prev)}}
			}
			out[ann] = v
			continue
		}
		switch {
		case strings.HasPrefix(k, EnvPrefix):
			return nil, &EnvError{k, v, &AnnotationError{Msg: "is not a bypass-hook variable; the known ones are " + knownVars + " (the config is the host's: a container cannot choose it)"}}
		case nearMiss(envLetters, strings.ToLower(k)):
			return nil, &EnvError{k, v, &AnnotationError{Msg: "looks like a misspelling of " + EnvPrefix + "; the known variables are " + knownVars + ", in capitals"}}
		}
	}
	return out, nil
}

// DecideEnv is Decide for a container whose spec has env: the opt-in
// variables count as the annotations they stand for. It also returns the
// annotations with the variables' added, as a runtime wrapper writes them
// into config.json for the hook to read. A variable that contradicts an
// annotation of the container is refused rather than silently outvoted.
func (c *Config) DecideEnv(annotations map[string]string, env []string) (Decision, map[string]string, error) {
	fromEnv, err := EnvOptIn(env)
	if err != nil {
		return Decision{}, nil, err
	}
	ours, err := ourAnnotations(annotations)
	if err != nil {
		return Decision{}, nil, err
	}
	merged := maps.Clone(annotations)
	if merged == nil {
		merged = map[string]string{}
	}
	for ann, v := range fromEnv {
		if have, set := ours[ann]; set && have != v {
			return Decision{}, nil, &EnvError{envName(ann), v, &AnnotationError{ann, v,
				fmt.Sprintf("the container's annotation %s=%q contradicts it; drop one of the two", ann, have)}}
		}
		if _, set := ours[ann]; !set {
			merged[ann] = v
		}
	}
	if err := c.envOnlyNarrows(fromEnv, ours); err != nil {
		return Decision{}, nil, err
	}
	dec, err := c.Decide(merged)
	var annErr *AnnotationError
	if errors.As(err, &annErr) {
		if v, fromVar := fromEnv[annErr.Annotation]; fromVar {
			if _, alsoAnnotated := ours[annErr.Annotation]; !alsoAnnotated {
				return Decision{}, nil, &EnvError{envName(annErr.Annotation), v, annErr}
			}
		}
	}
	if err != nil {
		return Decision{}, nil, err
	}
	return dec, merged, nil
}

func envName(annotation string) string {
	for k, a := range envAnnotations {
		if a == annotation {
			return k
		}
	}
	return annotation
}

// envOnlyNarrows holds the variables to the annotations' rules even where
// trustAnnotations lifts them: an image's ENV sets them as well as the
// container's creator does, and whoever builds the image may be the tenant
// the fence is for, while trustAnnotations vouches only for who writes
// annotations.
func (c *Config) envOnlyNarrows(fromEnv, ours map[string]string) error {
	if !c.TrustAnnotations {
		return nil // Decide applies the rules to the variables already
	}
	envOnly := map[string]string{}
	for ann, v := range fromEnv {
		if _, set := ours[ann]; !set {
			envOnly[ann] = v
		}
	}
	strict := *c
	strict.TrustAnnotations = false
	_, err := strict.Decide(envOnly)
	var annErr *AnnotationError
	if errors.As(err, &annErr) {
		return &EnvError{envName(annErr.Annotation), annErr.Value, annErr}
	}
	return err
}
