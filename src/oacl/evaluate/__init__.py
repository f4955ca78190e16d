"""oacl.evaluate"""
