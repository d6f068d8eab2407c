package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
)

// envPrefix is prepended to a flag's name to give its environment variable:
// --poll-interval is SPOT_AGENT_POLL_INTERVAL.
const envPrefix = "SPOT_AGENT_"

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag that has an environment variable, before the
// command line is parsed, so that the command line wins.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("invalid value %q for %s (--%s): %w", v, name, f.Name, err))
			return
		}
		if l, ok := f.Value.(*listFlag); ok {
			l.fromEnv = true
		}
	})
	return errors.Join(errs...)
}

// parse applies the environment, then the command line; any error is a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return &usageError{err}
	}
	return parseArgs(fs, args)
}

// parseArgs parses the command line. Only -h prints the usage: a bad flag
// is one line and the hint to run -h (main prints both), not the error
// above every flag's help, which the flag package would print.
func parseArgs(fs *flag.FlagSet, args []string) error {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	if err != nil {
		return &usageError{withClosestFlag(fs, err)}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))}
	}
	return nil
}

// withClosestFlag adds to the flag package's error for an unknown flag the
// flag of fs nearest to it, if one is near.
func withClosestFlag(fs *flag.FlagSet, err error) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return err
	}
	name = strings.TrimPrefix(name, "-")
	best, dist := "", 3
	fs.VisitAll(func(f *flag.Flag) {
		if d := editDistance(name, f.Name); d < dist {
			best, dist = f.Name, d
		}
	})
	if best == "" {
		return err
	}
	return fmt.Errorf("%w: did you mean --%s?", err, best)
}

// unknownSettings lists the variables of environ named like a setting
// (SPOT_AGENT_<FLAG>) that are no flag of fs, sorted, each with the
// setting and flag nearest to it ("" when none is near).
func unknownSettings(environ []string, fs *flag.FlagSet) []unknownSetting {
	flags := map[string]string{} // setting → flag
	fs.VisitAll(func(f *flag.Flag) { flags[envName(f.Name)] = f.Name })
	var out []unknownSetting
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if _, known := flags[k]; known || !strings.HasPrefix(k, envPrefix) {
			continue
		}
		u := unknownSetting{Variable: k}
		u.Setting, u.Flag = nearestSetting(k, flags)
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b unknownSetting) int { return strings.Compare(a.Variable, b.Variable) })
	return out
}

// unknownSetting is a variable named like a setting that is none, and the
// setting nearest to it.
type unknownSetting struct{ Variable, Setting, Flag string }

// nearestSetting is the setting of flags (setting → flag) nearest to key, a
// typo, a missing or extra letter, and its flag; "" when none is near.
func nearestSetting(key string, flags map[string]string) (setting, flagName string) {
	best, dist := "", 4
	for k := range flags {
		if d := editDistance(key, k); d < dist || (d == dist && k < best) {
			best, dist = k, d
		}
	}
	if best == "" {
		return "", ""
	}
	return best, flags[best]
}

// editDistance is the Levenshtein distance of two names.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// listFlag is a repeatable flag that also takes comma-separated values. A value
// from the environment is replaced, not extended, by the command line.
type listFlag struct {
	values  []string
	fromEnv bool
}

func (l *listFlag) String() string { return strings.Join(l.values, ",") }

func (l *listFlag) Set(v string) error {
	if l.fromEnv {
		l.values, l.fromEnv = nil, false
	}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.values = append(l.values, p)
		}
	}
	return nil
}

// logFlags are shared by the commands that log.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

// logger builds the process's one logger, writing to stderr (the journal, under systemd).
func (l *logFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, &usageError{fmt.Errorf("--log-level: %q is not debug, info, warn or error", l.level)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, &usageError{fmt.Errorf("--log-format: %q is not text or json", l.format)}
}
