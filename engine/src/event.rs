//! The event model: the typed `LogEvent<D, C, L>`, the runtime-shaped `DynEvent`, and the
//! [`Row`] trait through which the storage layer reads either without copying.

/// Sixteen boolean flags carried by every event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventFlags(pub u16);

impl EventFlags {
    /// No flag set.
    pub const EMPTY: EventFlags = EventFlags(0);

    /// True when flag `bit` (0..16) is set.
    pub fn contains(self, bit: u8) -> bool {
        bit < 16 && self.0 & (1 << bit) != 0
    }

    /// Returns the flags with `bit` (0..16) set; bits of 16 and above are ignored.
    #[must_use]
    pub fn with(self, bit: u8) -> EventFlags {
        if bit < 16 {
            EventFlags(self.0 | (1 << bit))
        } else {
            self
        }
    }
}

impl From<u16> for EventFlags {
    fn from(v: u16) -> Self {
        EventFlags(v)
    }
}

/// One event of a schema with `D` dims, `C` counters and `L` labels.
///
/// `#[derive(Schema)]` generates a typed builder that produces this; you rarely build it by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent<const D: usize, const C: usize, const L: usize> {
    /// Unique event id. Empty means "let the engine assign one".
    pub id: String,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Primary signed metric (cost, duration, value).
    pub metric: i64,
    /// Unsigned counters.
    pub counters: [u32; C],
    /// Primary latency in milliseconds.
    pub latency_ms: u32,
    /// Detailed latency in milliseconds.
    pub latency_detail_ms: u32,
    /// Status code (HTTP, gRPC, application).
    pub status: u16,
    /// Boolean flags.
    pub flags: EventFlags,
    /// Indexed string dimensions.
    pub dims: [String; D],
    /// Free-form string labels: stored, returned by queries, not indexed.
    pub labels: [String; L],
}

impl<const D: usize, const C: usize, const L: usize> LogEvent<D, C, L> {
    /// An event at `ts_ns` with every other field zero or empty.
    pub fn new(ts_ns: i64) -> Self {
        LogEvent {
            id: String::new(),
            ts_ns,
            metric: 0,
            counters: [0; C],
            latency_ms: 0,
            latency_detail_ms: 0,
            status: 0,
            flags: EventFlags::EMPTY,
            dims: std::array::from_fn(|_| String::new()),
            labels: std::array::from_fn(|_| String::new()),
        }
    }
}

impl<const D: usize, const C: usize, const L: usize> Default for LogEvent<D, C, L> {
    fn default() -> Self {
        Self::new(0)
    }
}

/// An event whose shape is only known at run time (the agent reads its schema from a file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynEvent {
    /// Unique event id. Empty means "let the engine assign one".
    pub id: String,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Primary signed metric.
    pub metric: i64,
    /// Unsigned counters, one per schema counter.
    pub counters: Vec<u32>,
    /// Primary latency in milliseconds.
    pub latency_ms: u32,
    /// Detailed latency in milliseconds.
    pub latency_detail_ms: u32,
    /// Status code.
    pub status: u16,
    /// Boolean flags.
    pub flags: EventFlags,
    /// Dimension values, one per schema dim.
    pub dims: Vec<String>,
    /// Label values, one per schema label.
    pub labels: Vec<String>,
}

/// Read access to one event, implemented by [`LogEvent`] and [`DynEvent`].
///
/// The storage layer is written against this trait, so the typed API costs nothing over the
/// runtime one: no conversion happens on append.
pub trait Row {
    /// Event id (empty: the engine assigns one).
    fn id(&self) -> &str;
    /// Timestamp in nanoseconds.
    fn ts_ns(&self) -> i64;
    /// Primary metric.
    fn metric(&self) -> i64;
    /// Latency in milliseconds.
    fn latency_ms(&self) -> u32;
    /// Detailed latency in milliseconds.
    fn latency_detail_ms(&self) -> u32;
    /// Status code.
    fn status(&self) -> u16;
    /// Flags.
    fn flags(&self) -> EventFlags;
    /// Counters.
    fn counters(&self) -> &[u32];
    /// Dims.
    fn dims(&self) -> &[String];
    /// Labels.
    fn labels(&self) -> &[String];
}

macro_rules! impl_row {
    () => {
        #[inline]
        fn id(&self) -> &str {
            &self.id
        }
        #[inline]
        fn ts_ns(&self) -> i64 {
            self.ts_ns
        }
        #[inline]
        fn metric(&self) -> i64 {
            self.metric
        }
        #[inline]
        fn latency_ms(&self) -> u32 {
            self.latency_ms
        }
        #[inline]
        fn latency_detail_ms(&self) -> u32 {
            self.latency_detail_ms
        }
        #[inline]
        fn status(&self) -> u16 {
            self.status
        }
        #[inline]
        fn flags(&self) -> EventFlags {
            self.flags
        }
        #[inline]
        fn counters(&self) -> &[u32] {
            &self.counters
        }
        #[inline]
        fn dims(&self) -> &[String] {
            &self.dims
        }
        #[inline]
        fn labels(&self) -> &[String] {
            &self.labels
        }
    };
}

impl<const D: usize, const C: usize, const L: usize> Row for LogEvent<D, C, L> {
    impl_row!();
}

impl Row for DynEvent {
    impl_row!();
}

impl<R: Row + ?Sized> Row for &R {
    fn id(&self) -> &str {
        (**self).id()
    }
    fn ts_ns(&self) -> i64 {
        (**self).ts_ns()
    }
    fn metric(&self) -> i64 {
        (**self).metric()
    }
    fn latency_ms(&self) -> u32 {
        (**self).latency_ms()
    }
    fn latency_detail_ms(&self) -> u32 {
        (**self).latency_detail_ms()
    }
    fn status(&self) -> u16 {
        (**self).status()
    }
    fn flags(&self) -> EventFlags {
        (**self).flags()
    }
    fn counters(&self) -> &[u32] {
        (**self).counters()
    }
    fn dims(&self) -> &[String] {
        (**self).dims()
    }
    fn labels(&self) -> &[String] {
        (**self).labels()
    }
}

impl<const D: usize, const C: usize, const L: usize> From<LogEvent<D, C, L>> for DynEvent {
    fn from(e: LogEvent<D, C, L>) -> Self {
        DynEvent {
            id: e.id,
            ts_ns: e.ts_ns,
            metric: e.metric,
            counters: e.counters.to_vec(),
            latency_ms: e.latency_ms,
            latency_detail_ms: e.latency_detail_ms,
            status: e.status,
            flags: e.flags,
            dims: e.dims.into(),
            labels: e.labels.into(),
        }
    }
}
