package server

import (
	"context"
	"log/slog"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapSlogHandler sends log/slog records (from packages that log through
// slog) to the member's zap logger.
func zapSlogHandler(lg *zap.Logger) slog.Handler { return &slogToZap{lg: lg} }

type slogToZap struct {
	lg    *zap.Logger
	attrs []zap.Field
}

func (h *slogToZap) Enabled(_ context.Context, l slog.Level) bool {
	return h.lg.Core().Enabled(zapLevel(l))
}

func (h *slogToZap) Handle(_ context.Context, r slog.Record) error {
	fields := append([]zap.Field(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(a.Key, a.Value.Any()))
		return true
	})
	if ce := h.lg.Check(zapLevel(r.Level), r.Message); ce != nil {
		ce.Write(fields...)
	}
	return nil
}

func (h *slogToZap) WithAttrs(as []slog.Attr) slog.Handler {
	n := &slogToZap{lg: h.lg, attrs: append([]zap.Field(nil), h.attrs...)}
	for _, a := range as {
		n.attrs = append(n.attrs, zap.Any(a.Key, a.Value.Any()))
	}
	return n
}

func (h *slogToZap) WithGroup(string) slog.Handler { return h }

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	case l >= slog.LevelInfo:
		return zapcore.InfoLevel
	}
	return zapcore.DebugLevel
}

func newTimer() *time.Timer { return time.NewTimer(50 * time.Millisecond) }
