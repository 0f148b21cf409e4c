package config

import (
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logTimeLayout is the timestamp layout of etcd's logs: microseconds, "Z"
// for UTC or a numeric offset.
const logTimeLayout = "2006-01-02T15:04:05.000000Z0700"

// EncoderConfig is the zap encoder configuration of etcd's server logs:
// fields "level", "ts", "caller", "msg" (and "logger", "stacktrace"),
// lowercase levels, durations as strings, short callers.
func EncoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:        "ts",
		LevelKey:       "level",
		NameKey:        "logger",
		CallerKey:      "caller",
		MessageKey:     "msg",
		StacktraceKey:  "stacktrace",
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     encodeTime,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
	}
}

func encodeTime(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(t.Format(logTimeLayout))
}

// BuildLogger builds the server's logger from --log-level, --log-format and
// --log-outputs the way etcd does, so that its lines look like etcd's:
// JSON (or console) to stderr for "default" and "stderr", to stdout, or
// appended to files; errors carry a stack trace; repeated messages are
// sampled after the first 100 per second.
func (c *Config) BuildLogger() (*zap.Logger, error) {
	if err := c.checkLogging(); err != nil {
		return nil, err
	}
	level, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, err
	}
	format := c.LogFormat
	if format == "" {
		format = LogFormatJSON
	}
	outputs := c.LogOutputs
	if len(outputs) == 0 {
		outputs = []string{DefaultLogOutput}
	}
	paths := map[string]bool{}
	for _, o := range outputs {
		switch o {
		case DefaultLogOutput, "stderr":
			paths["stderr"] = true
		default:
			paths[o] = true
		}
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	if paths["/dev/null"] {
		sorted = []string{"/dev/null"}
	}

	zc := zap.Config{
		Level:            zap.NewAtomicLevelAt(level),
		Sampling:         &zap.SamplingConfig{Initial: 100, Thereafter: 100},
		Encoding:         format,
		EncoderConfig:    EncoderConfig(),
		OutputPaths:      sorted,
		ErrorOutputPaths: sorted,
	}
	lg, err := zc.Build()
	if err != nil {
		return nil, fmt.Errorf("cannot build logger for --log-outputs %v: %w", outputs, err)
	}
	return lg, nil
}
