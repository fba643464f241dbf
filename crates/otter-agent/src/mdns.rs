//! mDNS: advertise a device as `_otter._tcp`, and discover devices.
