"""``appliance provision``: site PKI, per-device bundles and the installer they carry.

Runs on the integrator's or technician's laptop, not on the device.
"""
