"""oacl.cam"""
