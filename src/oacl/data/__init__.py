"""oacl.data"""
